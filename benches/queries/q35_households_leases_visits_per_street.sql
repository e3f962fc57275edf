-- Rooms of households, leases and care visits together (UNION ALL), per street and kind.
SELECT g.street_code, t.kind, count(*) AS n
FROM (SELECT room_id, 'household' AS kind FROM households
      UNION ALL SELECT room_id, 'lease' FROM leases
      UNION ALL SELECT room_id, 'visit' FROM visits) t
JOIN rooms r ON t.room_id = r.room_id JOIN buildings b ON r.building_id = b.building_id
JOIN grids g ON b.grid_code = g.grid_code
GROUP BY 1, 2 ORDER BY 1, 2
