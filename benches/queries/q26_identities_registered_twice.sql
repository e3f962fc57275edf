-- Identities with more than one active registration, by how many.
SELECT registrations, count(*) AS identities
FROM (SELECT id_number, count(*) AS registrations FROM people WHERE status = 'active' GROUP BY id_number) t
WHERE registrations > 1
GROUP BY registrations
ORDER BY registrations
