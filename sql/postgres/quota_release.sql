-- Give back the part of a reservation that produced no observation.
UPDATE team_quotas SET used = used - %(n)s WHERE team_id = %(team_id)s AND period = %(period)s
