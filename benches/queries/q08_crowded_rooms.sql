-- The 20 most crowded rooms (area per active resident).
SELECT r.room_id, r.area_m2, count(*) AS residents, r.area_m2 / count(*) AS m2_per_person
FROM rooms r
JOIN people p ON p.room_id = r.room_id
WHERE p.status = 'active' AND r.area_m2 IS NOT NULL
GROUP BY r.room_id, r.area_m2
ORDER BY m2_per_person, r.room_id
LIMIT 20
