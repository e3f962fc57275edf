-- Distinct identities seen at doors in the last week before as_of, per district.
SELECT g.district_code, count(DISTINCT e.id_number) AS identities, count(*) AS events
FROM access_events e
JOIN buildings b ON e.building_id = b.building_id
JOIN grids g ON b.grid_code = g.grid_code
WHERE e.ts >= '2026-10-25 00:00:00+08:00' AND e.ts < '2026-11-01 00:00:00+08:00'
GROUP BY g.district_code
ORDER BY g.district_code
