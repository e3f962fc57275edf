-- Buildings per district: how many, with door systems, average and highest floors.
SELECT g.district_code, g.district_name, count(*) AS buildings,
       sum(CASE WHEN b.access_control THEN 1 ELSE 0 END) AS with_doors,
       round(avg(b.floors), 3) AS avg_floors, max(b.floors) AS max_floors
FROM buildings b
JOIN grids g ON b.grid_code = g.grid_code
GROUP BY g.district_code, g.district_name
ORDER BY g.district_code
