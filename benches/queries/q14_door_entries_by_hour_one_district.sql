-- Door entries by hour of the day (China time) in one district, in October.
SELECT CAST(date_part('hour', e.ts) AS INTEGER) AS hour, count(*) AS entries
FROM access_events e
JOIN buildings b ON e.building_id = b.building_id
WHERE b.grid_code LIKE '440106%' AND e.direction = 'in'
  AND e.ts >= '2026-10-01 00:00:00+08:00' AND e.ts < '2026-11-01 00:00:00+08:00'
GROUP BY 1
ORDER BY 1
