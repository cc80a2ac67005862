SELECT sum(quantity) FROM metering.usage_events WHERE tenant_id = %(tenant)s
