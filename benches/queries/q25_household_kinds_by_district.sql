-- Households per kind and district.
SELECT g.district_code, h.kind, count(*) AS households
FROM households h
JOIN rooms r ON h.room_id = r.room_id
JOIN buildings b ON r.building_id = b.building_id
JOIN grids g ON b.grid_code = g.grid_code
GROUP BY g.district_code, h.kind
ORDER BY g.district_code, h.kind
