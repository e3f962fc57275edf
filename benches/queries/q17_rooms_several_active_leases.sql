-- Rooms with two or more leases running on 2026-11-01, per district.
WITH running AS (
  SELECT room_id, count(*) AS leases
  FROM leases
  WHERE start_date <= DATE '2026-11-01' AND (end_date IS NULL OR end_date >= DATE '2026-11-01')
  GROUP BY room_id
  HAVING count(*) >= 2
)
SELECT g.district_code, count(*) AS rooms, sum(x.leases) AS leases
FROM running x
JOIN rooms r ON r.room_id = x.room_id
JOIN buildings b ON r.building_id = b.building_id
JOIN grids g ON b.grid_code = g.grid_code
GROUP BY g.district_code
ORDER BY g.district_code
