-- The NEXMark sources for the SQL versions of the queries: the suite's three tables, read from
-- its JSON lines ({"event_type": 2, "bid": {...}}). As in the suite's DDL, the times are
-- TIMESTAMP(3), given as integers of milliseconds since the epoch, and dateTime is the event time.
CREATE SOURCE person (id BIGINT NOT NULL, name VARCHAR, emailAddress VARCHAR, creditCard VARCHAR,
                      city VARCHAR, state VARCHAR, dateTime TIMESTAMP(3), extra VARCHAR)
    WITH (event_time = 'dateTime');
CREATE SOURCE auction (id BIGINT NOT NULL, itemName VARCHAR, description VARCHAR, initialBid BIGINT,
                       reserve BIGINT, dateTime TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT,
                       category BIGINT, extra VARCHAR)
    WITH (event_time = 'dateTime');
CREATE SOURCE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
                   dateTime TIMESTAMP(3), extra VARCHAR)
    WITH (event_time = 'dateTime');
