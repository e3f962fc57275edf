-- Death records whose person still has an active registration, per district.
SELECT g.district_code, count(DISTINCT d.id_number) AS people
FROM deaths d
JOIN people p ON p.id_number = d.id_number AND p.status = 'active'
JOIN rooms r ON p.room_id = r.room_id
JOIN buildings b ON r.building_id = b.building_id
JOIN grids g ON b.grid_code = g.grid_code
GROUP BY g.district_code
ORDER BY g.district_code
