-- Door events per building of one street.
SELECT e.building_id, count(*) AS events
FROM access_events e
JOIN buildings b ON e.building_id = b.building_id
WHERE b.grid_code LIKE '440106001%'
GROUP BY e.building_id
ORDER BY e.building_id
