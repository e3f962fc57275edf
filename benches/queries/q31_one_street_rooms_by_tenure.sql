-- One street's rooms by tenure: rooms, rooms with no active resident, active residents.
WITH occ AS (
  SELECT room_id, count(*) AS residents FROM people WHERE status = 'active' GROUP BY room_id
)
SELECT r.tenure, count(*) AS rooms,
       sum(CASE WHEN o.room_id IS NULL THEN 1 ELSE 0 END) AS empty_rooms,
       coalesce(sum(o.residents), 0) AS residents
FROM rooms r
JOIN buildings b ON r.building_id = b.building_id
LEFT JOIN occ o ON o.room_id = r.room_id
WHERE b.grid_code LIKE '440106001%'
GROUP BY r.tenure
ORDER BY r.tenure
