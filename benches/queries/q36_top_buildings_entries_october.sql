-- The ten buildings with the most entries in October, the month written as TIMESTAMP literals with the city's offset.
SELECT building_id, count(*) AS entries
FROM access_events
WHERE ts >= TIMESTAMP '2026-10-01 00:00:00+08:00' AND ts < TIMESTAMP '2026-11-01 00:00:00+08:00' AND direction = 'in'
GROUP BY building_id ORDER BY entries DESC, building_id LIMIT 10
