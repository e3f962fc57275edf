-- The 20 commonest surnames (first character of the name) among active residents of one district.
SELECT substr(p.name, 1, 1) AS surname, count(*) AS residents
FROM people p
JOIN rooms r ON p.room_id = r.room_id
JOIN buildings b ON r.building_id = b.building_id
WHERE b.grid_code LIKE '440104%' AND p.status = 'active'
GROUP BY 1
ORDER BY residents DESC, surname
LIMIT 20
