DELETE FROM scanners WHERE id = %(id)s RETURNING id
