-- Rows = refresh jobs whose last run failed; the gate expects none.
SELECT j.jobname, d.status, d.return_message
FROM cron.job AS j
JOIN LATERAL (
    SELECT status, return_message FROM cron.job_run_details AS r
    WHERE r.jobid = j.jobid ORDER BY r.start_time DESC LIMIT 1
) AS d ON true
WHERE j.jobname LIKE 'refresh-%' AND d.status = 'failed'
