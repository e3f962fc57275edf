-- Rooms with the highest electricity use in the last month of readings.
SELECT room_id, sum(electricity_kwh) AS kwh
FROM utility_readings
WHERE month = (SELECT max(month) FROM utility_readings)
GROUP BY room_id
ORDER BY kwh DESC, room_id
LIMIT 20
