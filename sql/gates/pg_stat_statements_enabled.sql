-- The baseline needs pg_stat_statements preloaded and created.
SELECT count(*) = 1 FROM pg_extension WHERE extname = 'pg_stat_statements'
