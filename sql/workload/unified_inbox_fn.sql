-- KPI 5 unified inbox, phase 3: get_unified_inbox walks the newest inbound messages and stops at 50 leads.
SELECT id, lead_id, channel, subject, created_at
FROM get_unified_inbox(%(user_id)s, 50)
