-- One day's door entries: the 20 busiest buildings of the city on 2026-10-15.
SELECT e.building_id, count(*) AS entries, count(DISTINCT e.id_number) AS identities
FROM access_events e
WHERE e.direction = 'in' AND e.ts >= '2026-10-15 00:00:00+08:00' AND e.ts < '2026-10-16 00:00:00+08:00'
GROUP BY e.building_id
ORDER BY entries DESC, e.building_id
LIMIT 20
