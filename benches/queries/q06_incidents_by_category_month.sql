-- Incidents per category and month, with the share closed.
SELECT category_code, date_trunc('month', reported_at) AS month, count(*) AS incidents,
       sum(CASE WHEN closed_at IS NOT NULL THEN 1 ELSE 0 END) AS closed
FROM incidents
GROUP BY category_code, date_trunc('month', reported_at)
ORDER BY category_code, month
