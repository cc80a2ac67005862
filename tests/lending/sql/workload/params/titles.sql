SELECT title_id AS title, branch_id AS branch FROM lending.copies WHERE id % 997 = 0
