-- The 30 grids with most active residents per active full-time worker (grids without one first).
WITH res AS (
  SELECT b.grid_code, count(*) AS residents
  FROM people p
  JOIN rooms r ON p.room_id = r.room_id
  JOIN buildings b ON r.building_id = b.building_id
  WHERE p.status = 'active'
  GROUP BY b.grid_code
), staff AS (
  SELECT grid_code, count(*) AS workers
  FROM workers
  WHERE active AND employment = 'full_time'
  GROUP BY grid_code
)
SELECT res.grid_code, res.residents, coalesce(staff.workers, 0) AS workers,
       CASE WHEN staff.workers IS NULL THEN NULL ELSE res.residents * 1.0 / staff.workers END AS per_worker
FROM res LEFT JOIN staff ON staff.grid_code = res.grid_code
ORDER BY coalesce(staff.workers, 0) = 0 DESC, per_worker DESC, res.grid_code
LIMIT 30
