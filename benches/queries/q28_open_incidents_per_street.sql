-- Incidents still open (not closed, rejected or parked), per street and urgency.
SELECT g.street_code, i.urgency, count(*) AS open_incidents, min(i.reported_at) AS oldest
FROM incidents i
JOIN grids g ON i.grid_code = g.grid_code
WHERE i.status NOT IN ('closed', 'rejected', 'parked')
GROUP BY g.street_code, i.urgency
ORDER BY open_incidents DESC, g.street_code, i.urgency
LIMIT 40
