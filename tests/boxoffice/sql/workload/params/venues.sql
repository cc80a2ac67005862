SELECT id AS venue, timestamptz '2026-03-01' + make_interval(days => id % 120) AS after FROM box.venues
