-- Households none of whose members is still active (NOT EXISTS), per kind.
SELECT h.kind, count(*) AS households
FROM households h
WHERE NOT EXISTS (SELECT 1 FROM people p WHERE p.household_id = h.household_id AND p.status = 'active')
GROUP BY h.kind ORDER BY h.kind
