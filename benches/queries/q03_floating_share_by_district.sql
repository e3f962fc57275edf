-- Share of floating residents per district.
SELECT g.district_code,
       count(*) AS residents,
       sum(CASE WHEN p.residence_kind = 'floating' THEN 1 ELSE 0 END) AS floating
FROM people p
JOIN rooms r ON p.room_id = r.room_id
JOIN buildings b ON r.building_id = b.building_id
JOIN grids g ON b.grid_code = g.grid_code
WHERE p.status = 'active'
GROUP BY g.district_code
ORDER BY g.district_code
