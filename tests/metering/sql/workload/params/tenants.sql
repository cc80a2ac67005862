SELECT DISTINCT tenant_id AS tenant FROM metering.usage_events ORDER BY tenant_id
