-- Rooms whose electricity use rose by half from one month to the next (a self-join of readings), per month.
WITH r AS (
  SELECT room_id, month, electricity_kwh,
         CAST(substr(month, 1, 4) AS INTEGER) * 12 + CAST(substr(month, 6, 2) AS INTEGER) AS m
  FROM utility_readings
)
SELECT b.month, count(*) AS rooms
FROM r a
JOIN r b ON a.room_id = b.room_id AND b.m = a.m + 1
WHERE a.electricity_kwh >= 20 AND b.electricity_kwh > 1.5 * a.electricity_kwh
GROUP BY b.month
ORDER BY b.month
