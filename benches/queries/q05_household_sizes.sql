-- Distribution of household sizes (active members).
SELECT members, count(*) AS households
FROM (SELECT household_id, count(*) AS members FROM people WHERE status = 'active' AND household_id IS NOT NULL GROUP BY household_id) t
GROUP BY members
ORDER BY members
