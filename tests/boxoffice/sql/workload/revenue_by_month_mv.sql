SELECT month, provider, payments, cents FROM box.revenue_by_month ORDER BY month, provider
