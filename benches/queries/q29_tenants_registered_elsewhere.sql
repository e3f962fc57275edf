-- Running leases whose tenant is registered active in another room (a semi-join), per district.
SELECT g.district_code, count(*) AS leases
FROM leases l
JOIN rooms r ON l.room_id = r.room_id
JOIN buildings b ON r.building_id = b.building_id
JOIN grids g ON b.grid_code = g.grid_code
WHERE l.start_date <= DATE '2026-11-01' AND (l.end_date IS NULL OR l.end_date >= DATE '2026-11-01')
  AND EXISTS (SELECT 1 FROM people p
              WHERE p.id_number = l.tenant_id_number AND p.status = 'active' AND p.room_id <> l.room_id)
GROUP BY g.district_code
ORDER BY g.district_code
