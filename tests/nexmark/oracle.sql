-- NEXMark q0-q8 in DuckDB, batch semantics over the whole input: the oracle of tests/nexmark.rs.
-- Written from the nexmark/nexmark suite's Flink SQL and NEXMARK.md, not from lambdaflow's code:
-- HOP and TUMBLE are spelled out as arithmetic on dateTime (windows aligned to the epoch).
CREATE VIEW q0 AS SELECT auction, bidder, price, dateTime, extra FROM bid;

CREATE VIEW q1 AS SELECT auction, bidder, 0.908 * price AS price, dateTime, extra FROM bid;

CREATE VIEW q2 AS SELECT auction, price FROM bid WHERE auction % 123 = 0;

CREATE VIEW q3 AS
SELECT P.name, P.city, P.state, A.id
FROM auction AS A JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND P.state IN ('OR', 'ID', 'CA');

CREATE VIEW q4 AS
SELECT Q.category, AVG(Q.final) AS final
FROM (
  SELECT MAX(B.price) AS final, A.category
  FROM auction AS A JOIN bid AS B ON A.id = B.auction
  WHERE B.dateTime BETWEEN A.dateTime AND A.expires
  GROUP BY A.id, A.category
) AS Q
GROUP BY Q.category;

-- HOP(10 s, every 2 s): the starts are the multiples of 2000 in (dateTime - 10000, dateTime].
CREATE VIEW q5 AS
WITH hop AS (
  SELECT B.auction, (B.dateTime - B.dateTime % 2000) - 2000 * k.range AS starttime
  FROM bid AS B, range(0, 5) AS k
), counts AS (
  SELECT auction, starttime, COUNT(*) AS num FROM hop GROUP BY auction, starttime
), maxes AS (
  SELECT starttime, MAX(num) AS maxn FROM counts GROUP BY starttime
)
SELECT C.auction, C.num
FROM counts AS C JOIN maxes AS M ON C.starttime = M.starttime AND C.num >= M.maxn;

CREATE VIEW q6 AS
WITH winning AS (
  SELECT A.id, A.seller, A.expires, MAX(B.price) AS final
  FROM auction AS A JOIN bid AS B ON A.id = B.auction
  WHERE B.dateTime BETWEEN A.dateTime AND A.expires
  GROUP BY A.id, A.seller, A.expires
), ranked AS (
  SELECT seller, final,
         ROW_NUMBER() OVER (PARTITION BY seller ORDER BY expires DESC, id DESC) AS n
  FROM winning
)
SELECT seller, AVG(final) AS avg_price FROM ranked WHERE n <= 10 GROUP BY seller;

CREATE VIEW q7 AS
SELECT B.auction, B.price, B.bidder, B.dateTime, B.extra
FROM bid AS B JOIN (
  SELECT MAX(price) AS maxprice, (dateTime - dateTime % 10000) + 10000 AS window_end
  FROM bid GROUP BY dateTime - dateTime % 10000
) AS B1 ON B.price = B1.maxprice
WHERE B.dateTime BETWEEN B1.window_end - 10000 AND B1.window_end;

CREATE VIEW q8 AS
SELECT P.id, P.name, P.starttime
FROM (
  SELECT id, name, dateTime - dateTime % 10000 AS starttime
  FROM person GROUP BY id, name, dateTime - dateTime % 10000
) AS P JOIN (
  SELECT seller, dateTime - dateTime % 10000 AS starttime
  FROM auction GROUP BY seller, dateTime - dateTime % 10000
) AS A ON P.id = A.seller AND P.starttime = A.starttime;
