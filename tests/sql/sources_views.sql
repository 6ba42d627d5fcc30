-- Views over the sources of sources.sql, each checked against DuckDB over the same rows.
CREATE VIEW bids_per_auction AS
SELECT auction, COUNT(*) AS n, SUM(price) AS total, MAX(price) AS top, COUNT(DISTINCT bidder) AS bidders
FROM bid GROUP BY auction;

CREATE VIEW urgent_bids AS
SELECT auction, bidder, price, dateTime FROM bid WHERE urgent AND price > 50;

CREATE VIEW channels AS
SELECT lower(channel) AS channel, COUNT(*) AS n, AVG(price) AS mean
FROM bid WHERE channel IS NOT NULL GROUP BY lower(channel);

CREATE VIEW reserves AS
SELECT category, SUM(reserve) AS reserve, MIN(reserve) AS low, COUNT(reserve) AS priced, COUNT(*) AS n
FROM auction GROUP BY category;

CREATE VIEW people_by_state AS
SELECT state, COUNT(*) AS n, MIN(name) AS first_name FROM person GROUP BY state;

CREATE VIEW q2_like AS
SELECT auction, price FROM bid WHERE auction % 3 = 0;

CREATE VIEW q3_like AS
SELECT p.name, p.city, p.state, a.id
FROM auction AS a JOIN person AS p ON a.seller = p.id
WHERE a.category = 1 AND p.state IN ('OR', 'ID', 'CA');

CREATE VIEW bids_in_time AS
SELECT a.id, a.category, COUNT(*) AS n, MAX(b.price) AS best
FROM auction AS a JOIN bid AS b ON a.id = b.auction
WHERE b.dateTime BETWEEN a.dateTime AND a.expires
GROUP BY a.id, a.category;

CREATE VIEW q4_like AS
SELECT category, AVG(best) AS final FROM bids_in_time GROUP BY category;

CREATE VIEW auctions_without_bids AS
SELECT a.id, a.seller, b.price
FROM auction AS a LEFT JOIN bid AS b ON a.id = b.auction
WHERE b.price IS NULL;

CREATE VIEW bids_per_window AS
SELECT auction, dateTime - dateTime % 10000 AS window_start, COUNT(*) AS num
FROM bid GROUP BY auction, dateTime - dateTime % 10000;

CREATE VIEW q5_like AS
SELECT auction, window_start, num FROM (
  SELECT auction, window_start, num,
         ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY num DESC, auction) AS r
  FROM bids_per_window
) WHERE r <= 2;

CREATE VIEW q7_like AS
SELECT b.auction, b.price, b.bidder, b.dateTime
FROM bid AS b JOIN (
  SELECT dateTime - dateTime % 10000 AS w, MAX(price) AS top FROM bid GROUP BY dateTime - dateTime % 10000
) AS m ON b.price = m.top AND b.dateTime - b.dateTime % 10000 = m.w;

CREATE VIEW q8_like AS
SELECT p.id, p.name, p.dateTime - p.dateTime % 10000 AS starttime
FROM person AS p JOIN auction AS a
  ON p.id = a.seller AND p.dateTime - p.dateTime % 10000 = a.dateTime - a.dateTime % 10000;

CREATE VIEW distinct_bidders AS
SELECT DISTINCT bidder, urgent FROM bid;

CREATE VIEW totals AS
SELECT COUNT(*) AS bids, SUM(price) AS volume, COUNT(urgent) AS flagged FROM bid;

CREATE VIEW top_bids AS
SELECT auction, bidder, price FROM bid WHERE price IS NOT NULL ORDER BY price DESC, auction, bidder LIMIT 5;
