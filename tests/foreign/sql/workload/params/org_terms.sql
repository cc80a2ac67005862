SELECT o.id AS org_id, '%' || t.term || '%' AS pattern
FROM app.organizations o
CROSS JOIN (VALUES ('voice'), ('CSV'), ('webhook'), ('passw'), ('rate lim')) AS t (term)
ORDER BY md5(o.id::text || t.term)
