-- People aged 80 or more (born before 1946-11-01) in one street, by grid.
SELECT b.grid_code, count(*) AS elderly
FROM people p
JOIN rooms r ON p.room_id = r.room_id
JOIN buildings b ON r.building_id = b.building_id
WHERE b.grid_code LIKE '440106001%' AND p.birth_date <= DATE '1946-11-01' AND p.status = 'active'
GROUP BY b.grid_code
ORDER BY b.grid_code
