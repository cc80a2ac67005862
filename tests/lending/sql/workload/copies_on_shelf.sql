SELECT c.id FROM lending.copies c
WHERE c.title_id = %(title)s AND c.branch_id = %(branch)s
  AND NOT EXISTS (SELECT 1 FROM lending.loans l WHERE l.copy_id = c.id AND l.returned_at IS NULL)
