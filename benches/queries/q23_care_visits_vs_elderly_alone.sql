-- Elderly people living alone per grid against the care visits made there in October.
WITH alone AS (
  SELECT b.grid_code, count(*) AS elderly_alone
  FROM people p
  JOIN rooms r ON p.room_id = r.room_id
  JOIN buildings b ON r.building_id = b.building_id
  WHERE p.status = 'active' AND p.care_tags LIKE '%elderly_alone%'
  GROUP BY b.grid_code
), care AS (
  SELECT b.grid_code, count(*) AS care_visits
  FROM visits v
  JOIN rooms r ON v.room_id = r.room_id
  JOIN buildings b ON r.building_id = b.building_id
  WHERE v.kind = 'care_visit'
    AND v.visited_at >= '2026-10-01 00:00:00+08:00' AND v.visited_at < '2026-11-01 00:00:00+08:00'
  GROUP BY b.grid_code
)
SELECT a.grid_code, a.elderly_alone, coalesce(c.care_visits, 0) AS care_visits
FROM alone a LEFT JOIN care c ON c.grid_code = a.grid_code
ORDER BY coalesce(c.care_visits, 0) * 1.0 / a.elderly_alone, a.grid_code
LIMIT 50
