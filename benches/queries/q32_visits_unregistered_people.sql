-- Visits in October that saw a person not registered active in the room visited (an anti-join), per kind.
SELECT v.kind, count(*) AS visits, count(DISTINCT v.id_number) AS people
FROM visits v
WHERE v.id_number IS NOT NULL
  AND v.visited_at >= '2026-10-01 00:00:00+08:00' AND v.visited_at < '2026-11-01 00:00:00+08:00'
  AND NOT EXISTS (SELECT 1 FROM people p
                  WHERE p.id_number = v.id_number AND p.room_id = v.room_id AND p.status = 'active')
GROUP BY v.kind
ORDER BY v.kind
