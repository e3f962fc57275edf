-- The five workers with most visits in October in each district (dense_rank over a join).
WITH per_worker AS (
  SELECT g.district_code, v.worker_id, count(*) AS visits
  FROM visits v
  JOIN workers w ON v.worker_id = w.worker_id
  JOIN grids g ON w.grid_code = g.grid_code
  WHERE v.visited_at >= '2026-10-01 00:00:00+08:00' AND v.visited_at < '2026-11-01 00:00:00+08:00'
  GROUP BY g.district_code, v.worker_id
)
SELECT district_code, worker_id, visits, rk
FROM (SELECT *, dense_rank() OVER (PARTITION BY district_code ORDER BY visits DESC) AS rk FROM per_worker) t
WHERE rk <= 5
ORDER BY district_code, rk, worker_id
