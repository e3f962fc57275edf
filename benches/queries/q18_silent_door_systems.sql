-- Buildings with a door system that reported nothing in the last week before as_of, per street.
SELECT g.street_code, count(*) AS silent_buildings
FROM buildings b
JOIN grids g ON b.grid_code = g.grid_code
WHERE b.access_control
  AND NOT EXISTS (SELECT 1 FROM access_events e
                  WHERE e.building_id = b.building_id
                    AND e.ts >= '2026-10-25 00:00:00+08:00' AND e.ts < '2026-11-01 00:00:00+08:00')
GROUP BY g.street_code
ORDER BY silent_buildings DESC, g.street_code
LIMIT 30
