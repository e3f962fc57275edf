-- Visits per worker and kind over the last 30 days.
SELECT v.worker_id, v.kind, count(*) AS visits
FROM visits v
WHERE v.visited_at >= '2026-10-02 00:00:00'
GROUP BY v.worker_id, v.kind
ORDER BY v.worker_id, v.kind
LIMIT 100
