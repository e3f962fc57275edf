-- The three most populous grids of every street (a window function over grids' residents).
WITH per_grid AS (
  SELECT b.grid_code, count(*) AS residents
  FROM people p
  JOIN rooms r ON p.room_id = r.room_id
  JOIN buildings b ON r.building_id = b.building_id
  WHERE p.status = 'active'
  GROUP BY b.grid_code
), ranked AS (
  SELECT g.street_code, pg.grid_code, pg.residents,
         row_number() OVER (PARTITION BY g.street_code ORDER BY pg.residents DESC, pg.grid_code) AS rk
  FROM per_grid pg JOIN grids g ON g.grid_code = pg.grid_code
)
SELECT street_code, grid_code, residents, rk
FROM ranked
WHERE rk <= 3
ORDER BY street_code, rk
