SELECT d AS desk FROM generate_series(1, 4) AS d
