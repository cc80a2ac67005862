SELECT count(*) FROM lending.loans WHERE desk_id = %(desk)s AND returned_at IS NULL
