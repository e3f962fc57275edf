-- Identities seen at doors of two or more buildings in October: the 25 most travelled.
SELECT id_number, count(DISTINCT building_id) AS buildings, count(*) AS events
FROM access_events
WHERE id_number IS NOT NULL
  AND ts >= '2026-10-01 00:00:00+08:00' AND ts < '2026-11-01 00:00:00+08:00'
GROUP BY id_number
HAVING count(DISTINCT building_id) >= 2
ORDER BY buildings DESC, events DESC, id_number
LIMIT 25
