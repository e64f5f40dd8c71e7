-- Earlier days that received events after their coverage: for each day in
-- {late_days}, events inserted in (its {late_since}, {as_of}]. Late data to re-roll.
-- {min_since} is the oldest of them: a constant bound the inserted_at index can skip on.
SELECT DISTINCT toDate(timestamp) AS day
FROM {events_db:Identifier}.{events_table:Identifier}
WHERE inserted_at > {min_since:DateTime64(6, 'UTC')}
  AND inserted_at <= {as_of:DateTime64(6, 'UTC')}
  AND timestamp >= {range_start:DateTime64(6, 'UTC')}
  AND timestamp < {range_end:DateTime64(6, 'UTC')}
  AND toDate(timestamp) IN {late_days:Array(Date)}
  AND inserted_at > {late_since:Array(DateTime64(6, 'UTC'))}[indexOf({late_days:Array(Date)}, toDate(timestamp))]
ORDER BY day
