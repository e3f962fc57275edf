-- Active residents per street: people → rooms → buildings → grids.
SELECT g.street_code, count(*) AS residents
FROM people p
JOIN rooms r ON p.room_id = r.room_id
JOIN buildings b ON r.building_id = b.building_id
JOIN grids g ON b.grid_code = g.grid_code
WHERE p.status = 'active'
GROUP BY g.street_code
ORDER BY g.street_code
