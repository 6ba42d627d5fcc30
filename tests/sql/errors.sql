CREATE VIEW e01 AS SELECT ts AS t FROM ; -- expect: syntax
CREATE VIEW e02 AS SELECT (ts + 1 AS t FROM events; -- expect: syntax
CREATE VIEW e03 AS SELECT ts + 1) AS t FROM events; -- expect: syntax
CREATE VIEW e04 AS SELECT ts AS t, FROM events WHERE; -- expect: syntax
CREATE VIEW e05 AS SELECT nope AS x FROM events; -- expect: unknown column
CREATE VIEW e06 AS SELECT e.amount AS x FROM events AS e; -- expect: unknown column
CREATE VIEW e07 AS SELECT customer, COUNT(*) AS n FROM events GROUP BY customer ORDER BY nope DESC LIMIT 3; -- expect: unknown column
CREATE VIEW e08 AS SELECT ts AS t FROM no_such_table; -- expect: unknown table
CREATE VIEW e09 AS SELECT no_such_fn(ts) AS x FROM events; -- expect: unknown function
CREATE VIEW e10 AS SELECT lower(kind, kind) AS x FROM events; -- expect: argument
CREATE VIEW e11 AS SELECT epoch_ms() AS x FROM events; -- expect: argument
CREATE VIEW e12 AS SELECT date_trunc('hour') AS x FROM events; -- expect: argument
CREATE VIEW e13 AS SELECT kind + 1 AS x FROM events; -- expect: type
CREATE VIEW e14 AS SELECT SUM(kind) AS x FROM events; -- expect: type
CREATE VIEW e15 AS SELECT ts AS t FROM events WHERE kind; -- expect: boolean
CREATE VIEW e16 AS SELECT CAST(ts AS NOTATYPE) AS x FROM events; -- expect: type
CREATE VIEW e17 AS SELECT customer, COUNT(*) AS n FROM events GROUP BY product; -- expect: group by
CREATE VIEW e18 AS SELECT ts, COUNT(*) AS n FROM events; -- expect: group by
CREATE VIEW e19 AS SELECT customer, COUNT(*) AS n FROM events GROUP BY customer HAVING product > 1; -- expect: group by
CREATE VIEW e20 AS SELECT customer AS c FROM events HAVING ts > 0; -- expect: group by
CREATE VIEW e21 AS SELECT customer, COUNT(*) AS n FROM events WHERE SUM(amount_cents) > 0 GROUP BY customer; -- expect: aggregate
CREATE VIEW e22 AS SELECT COUNT(*) AS n FROM events GROUP BY COUNT(*); -- expect: aggregate
CREATE VIEW e23 AS SELECT SUM(COUNT(*)) AS n FROM events GROUP BY customer; -- expect: aggregate
CREATE VIEW e24 AS SELECT lower(kind) FILTER (WHERE ts > 0) AS x FROM events; -- expect: filter
CREATE VIEW e25 AS SELECT ts AS x, customer AS x FROM events; -- expect: duplicate
CREATE VIEW e26 AS SELECT customer, customer FROM events; -- expect: duplicate
CREATE VIEW e27 AS SELECT customer FROM (SELECT customer FROM events) AS a JOIN (SELECT customer FROM events) AS b ON a.customer = b.customer; -- expect: ambiguous
CREATE VIEW e28 AS SELECT ts AS t FROM events UNION SELECT ts AS t FROM events; -- expect: not supported
CREATE VIEW e29 AS SELECT ts AS t FROM events UNION ALL SELECT ts AS t FROM events; -- expect: not supported
INSERT INTO events VALUES (0, 'view', 1, 2, 0); -- expect: not supported
UPDATE events SET kind = 'view' WHERE ts = 0; -- expect: not supported
DELETE FROM events WHERE ts = 0; -- expect: not supported
CREATE TABLE copy_of_events AS SELECT ts FROM events; -- expect: not supported
CREATE VIEW e34 AS SELECT customer, SUM(amount_cents) OVER (PARTITION BY customer) AS running FROM events; -- expect: not supported
CREATE VIEW e35 AS SELECT ts, RANK() OVER (ORDER BY ts) AS r FROM events; -- expect: not supported
CREATE VIEW e36 AS SELECT customer, ROW_NUMBER() OVER (PARTITION BY customer) AS rn FROM events; -- expect: order by
CREATE VIEW e37 AS SELECT ts, customer FROM events WHERE ROW_NUMBER() OVER (ORDER BY ts) <= 3; -- expect: window
CREATE VIEW e38 AS SELECT o.ts AS t FROM events AS o WHERE o.amount_cents > (SELECT AVG(i.amount_cents) FROM events AS i WHERE i.customer = o.customer); -- expect: not supported
CREATE VIEW e39 AS SELECT o.ts AS t FROM events AS o WHERE EXISTS (SELECT 1 FROM events AS i WHERE i.customer = o.customer AND i.kind = 'refund'); -- expect: not supported
CREATE VIEW e40 AS SELECT customer, COUNT(*) AS n FROM events GROUP BY customer ORDER BY n DESC, customer; -- expect: limit
CREATE VIEW e41 AS SELECT customer, COUNT(*) AS n FROM events GROUP BY customer LIMIT 10; -- expect: order by
CREATE VIEW e42 AS SELECT a.ts AS t, b.ts AS u FROM events AS a RIGHT JOIN events AS b ON a.customer = b.customer; -- expect: not supported
CREATE VIEW e43 AS SELECT a.ts AS t, b.ts AS u FROM events AS a FULL OUTER JOIN events AS b ON a.customer = b.customer; -- expect: not supported
CREATE VIEW e44 AS SELECT a.ts AS t, b.ts AS u FROM events AS a JOIN events AS b ON a.ts < b.ts; -- expect: equi
CREATE VIEW e45 AS SELECT a.ts AS t, b.ts AS u FROM events AS a CROSS JOIN events AS b; -- expect: join
CREATE VIEW e46 AS SELECT ts AS t, now() AS at_time FROM events; -- expect: now
CREATE VIEW e47 AS SELECT ts AS t, random() AS r FROM events; -- expect: random
CREATE VIEW events AS SELECT ts AS t FROM events; -- expect: reserved
CREATE VIEW e49 AS SELECT window_start AS w FROM TABLE(SESSION(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '2' MINUTE)); -- expect: wrong number of arguments
CREATE VIEW e50 AS SELECT window_start AS w FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '1' MINUTE)); -- expect: wrong number of arguments
CREATE VIEW e51 AS SELECT window_start AS w FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(kind), INTERVAL '1' MINUTE)); -- expect: not varchar
CREATE VIEW e52 AS SELECT window_start AS w FROM TABLE(HOP(TABLE events, DESCRIPTOR(ts), INTERVAL '2' MINUTE, INTERVAL '5' MINUTE)); -- expect: whole number of slides
CREATE VIEW e53 AS SELECT a.ts AS t FROM events AS a, events AS b WHERE a.ts > b.ts; -- expect: comma join needs an equality
CREATE VIEW e54 AS SELECT mod(ts) AS m FROM events; -- expect: wrong number of arguments
