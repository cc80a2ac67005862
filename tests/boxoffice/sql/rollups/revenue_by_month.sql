SELECT date_trunc('month', paid_at) AS month, provider, count(*) AS payments, sum(amount_cents) AS cents
FROM box.payments GROUP BY 1, 2 ORDER BY 1, 2
