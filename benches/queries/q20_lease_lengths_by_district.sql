-- Lengths of ended leases (days), per district: count, average, longest.
SELECT g.district_code, count(*) AS leases,
       round(avg(l.end_date - l.start_date), 2) AS avg_days,
       max(l.end_date - l.start_date) AS max_days
FROM leases l
JOIN rooms r ON l.room_id = r.room_id
JOIN buildings b ON r.building_id = b.building_id
JOIN grids g ON b.grid_code = g.grid_code
WHERE l.end_date IS NOT NULL AND l.end_date < DATE '2026-11-01'
GROUP BY g.district_code
ORDER BY g.district_code
