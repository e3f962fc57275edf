-- New registrations per month since 2025, by residence kind.
SELECT CAST(date_trunc('month', registered_on) AS DATE) AS month, residence_kind, count(*) AS registrations
FROM people
WHERE registered_on >= DATE '2025-01-01'
GROUP BY 1, 2
ORDER BY 1, 2
