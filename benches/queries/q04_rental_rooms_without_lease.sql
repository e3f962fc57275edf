-- Rental rooms with no lease at all, per district.
SELECT g.district_code, count(*) AS rooms
FROM rooms r
JOIN buildings b ON r.building_id = b.building_id
JOIN grids g ON b.grid_code = g.grid_code
WHERE r.tenure = 'rental'
  AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.room_id = r.room_id)
GROUP BY g.district_code
ORDER BY g.district_code
