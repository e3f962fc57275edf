-- Leases that ended in 2026 while the tenant is still registered active in that room, per district.
SELECT g.district_code, count(DISTINCT l.lease_id) AS leases
FROM leases l
JOIN people p ON p.id_number = l.tenant_id_number AND p.room_id = l.room_id AND p.status = 'active'
JOIN rooms r ON l.room_id = r.room_id
JOIN buildings b ON r.building_id = b.building_id
JOIN grids g ON b.grid_code = g.grid_code
WHERE l.end_date >= DATE '2026-01-01' AND l.end_date < DATE '2026-11-01'
GROUP BY g.district_code
ORDER BY g.district_code
