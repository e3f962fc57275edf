-- Active residents by ten-year age band and sex, for one district.
SELECT CAST(floor((2026 - date_part('year', p.birth_date)) / 10) * 10 AS INTEGER) AS age_band, p.sex, count(*) AS residents
FROM people p
JOIN rooms r ON p.room_id = r.room_id
JOIN buildings b ON r.building_id = b.building_id
WHERE b.grid_code LIKE '440104%' AND p.status = 'active'
GROUP BY 1, 2
ORDER BY 1, 2
