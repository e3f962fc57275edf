-- Entries and exits per building of the first street (aggregate FILTER clauses).
SELECT e.building_id,
       count(*) FILTER (WHERE e.direction = 'in') AS ins,
       count(*) FILTER (WHERE e.direction = 'out') AS outs
FROM access_events e JOIN buildings b ON e.building_id = b.building_id
JOIN grids g ON b.grid_code = g.grid_code
WHERE g.street_code = (SELECT min(street_code) FROM grids)
GROUP BY e.building_id ORDER BY ins DESC, e.building_id LIMIT 15
